"""``python -m connector`` is the ``referral-sync`` command."""

from connector.cli import main

raise SystemExit(main())
