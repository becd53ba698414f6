"""mlpack serve: the Open Inference Protocol (KServe V2) over REST."""
