from tinyconvert.cli import main

main()
