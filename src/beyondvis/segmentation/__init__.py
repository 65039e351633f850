"""beyondvis.segmentation"""
