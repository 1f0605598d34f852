"""Image color quantization by weighted k-means."""
