"""beyondvis.sets"""
