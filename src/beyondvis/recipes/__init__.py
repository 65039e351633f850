"""beyondvis.recipes"""
