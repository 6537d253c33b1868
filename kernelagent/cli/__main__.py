from kernelagent.cli import main

main()
