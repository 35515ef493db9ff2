from aichat_backend.cli import main

raise SystemExit(main())
