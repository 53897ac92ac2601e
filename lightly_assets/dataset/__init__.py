"""How a folder is understood: the data root, the file walk with weak labels, videos and their frames."""
