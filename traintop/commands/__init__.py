"""Every `traintop` command, one module each, imported only when it runs
(cli.COMMANDS): a headless command never loads Textual, a viewer never torch."""
