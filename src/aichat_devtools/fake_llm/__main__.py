"""``python -m aichat_devtools.fake_llm``: the standalone fake upstream."""

from aichat_devtools.fake_llm.cli import main

main()
