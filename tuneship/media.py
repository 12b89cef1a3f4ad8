"""File kinds the stages agree on: which files are images (training data folders, `--images` folders)."""

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
"""Decoded by Pillow everywhere tuneship reads images (JPEG, PNG, BMP, GIF, WebP, TIFF)."""
