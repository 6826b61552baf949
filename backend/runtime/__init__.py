"""The server runtime: the Waitress server, the supervisor of worker processes, the metrics
port and the pinned Waitress release whose internals they patch.
"""
