"""The edge agent: config, supervision, pipelines, local store, officer console, CLI."""
