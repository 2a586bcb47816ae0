.PHONY: demo test

# Installs (first time, or when a pyproject.toml changed) and runs the default job.
demo:
	@scripts/dev-env.sh
	.venv/bin/esq plugins
	.venv/bin/esq list

# Installs (same rule) and runs the whole test matrix: every nox session.
test:
	@scripts/dev-env.sh
	.venv/bin/nox
