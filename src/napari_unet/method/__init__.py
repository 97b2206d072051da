"""The method of the paper: network, targets, eq. 2 weights, augmentation, tiling, instances."""
