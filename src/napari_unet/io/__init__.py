"""Files: image reading and atomic writing, zarr, checks made before a run."""
