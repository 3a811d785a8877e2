from scanner_agent.cli import main

raise SystemExit(main())
