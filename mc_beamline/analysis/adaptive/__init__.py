"""Decision logic of adaptive experiments: which condition or point to measure next, and when to stop.

Pure Python (no control-stack import): the same object decides live inside a plan and
re-derives every decision from stored data in replay.
"""
