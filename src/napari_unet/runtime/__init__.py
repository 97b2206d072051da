"""Where work runs: devices and precision, progress generators, shared argument checks."""
