from kalshi_tape.cli import main

raise SystemExit(main())
