from mlpack.cli import main

main()
