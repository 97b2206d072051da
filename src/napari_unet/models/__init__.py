"""Model files: safetensors, bioimage.io export, card and package reader, the default model."""
