from replbook.cli import main

raise SystemExit(main())
