from xfuse.cli import main

main()
