"""The one route choice: in memory, block by block into zarr, or on a dask cluster."""
