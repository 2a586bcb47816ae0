.PHONY: demo test

# Installs (first time, or when a pyproject.toml changed) and runs the default job: the baseline
# and four quantizers trained on synthetic shapes, scored by IoU, bits and the similarity metrics.
demo:
	@scripts/dev-env.sh
	.venv/bin/esq run demo

# Installs (same rule) and runs the whole test matrix: every nox session, two at a time, each
# session's log printed whole when it ends, then a summary (.ci/run, which CI runs).
test:
	@.ci/run
