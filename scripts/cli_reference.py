"""Print the option table of every `augmentor` command as Markdown, from the CLI itself (so from the
declarations in augmentor/config.py for fit). docs/cli.md holds its output; tests/test_docs.py checks
that docs/cli.md names every option --help prints.

    .venv/bin/python scripts/cli_reference.py > /tmp/options.md
"""

import click

from augmentor.cli import cli


def option_rows(command: click.Command):
    for p in command.params:
        if not isinstance(p, click.Option) or p.hidden:
            continue
        flags = " / ".join(f"`{f}`" for f in (*p.opts, *p.secondary_opts))
        if isinstance(p.type, click.Choice):
            kind = ", ".join(str(c) for c in p.type.choices)
        elif p.is_flag:
            kind = "flag"
        else:
            kind = p.type.name.lower()
        if p.required or p.default is None or p.default == "" or (p.is_flag and not p.secondary_opts):
            default = ""
        elif p.secondary_opts:  # a --x/--no-x switch
            default = f"`{p.opts[0] if p.default else p.secondary_opts[0]}`"
        else:
            default = f"`{p.default}`"
        yield f"| {flags} | {kind} | {default} | {(p.help or '').replace('|', '/')} |"


def main():
    for name, command in cli.commands.items():
        args = " ".join(a.human_readable_name for a in command.params if isinstance(a, click.Argument))
        print(f"### `augmentor {name}{' ' + args if args else ''}`\n")
        print((command.help or "").strip().splitlines()[0] + "\n")
        print("| option | type | default | meaning |\n| --- | --- | --- | --- |")
        for row in option_rows(command):
            print(row)
        print()


if __name__ == "__main__":
    main()
