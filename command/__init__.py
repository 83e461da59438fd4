"""The command domain: models, rules, engine, recommendations. No Dash imports here."""
