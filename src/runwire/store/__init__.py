"""Storage: SQLAlchemy models, the database handle, repositories, the event log, migrations.

Never imports the gateway, the REST API or the web page.
"""
