"""Built-in demo jobs that replays run as real processes (``train_loop``)."""
