"""beyondvis.retrieval"""
