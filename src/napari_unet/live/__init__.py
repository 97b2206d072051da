"""The live loop's core: the view's prediction, corrections, CPU thread sharing."""
