"""What a run leaves on disk: the run directory's layout, checkpoints, and writes that lose nothing."""
