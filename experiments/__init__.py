"""absl launchers of the framework's experiments; configs live in `experiments/configs`."""
