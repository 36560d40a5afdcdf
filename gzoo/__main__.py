from gzoo.cli import main

main()
