"""Segmentation: one image, images in blocks, stitching, labels written to zarr."""
