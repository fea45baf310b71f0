"""The tutorial's classifier trained the high-level way: compile + fit + evaluate + predict."""
