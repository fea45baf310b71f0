"""The benchmarks behind `fit-vs-tape bench`: the speed and accuracy of every way to train."""
