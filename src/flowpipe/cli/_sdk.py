"""``flowpipe sdk``: where the C/C++ stage SDK is, for a plugin's build."""

from __future__ import annotations

import click

__all__ = ["sdk"]


@click.command()
@click.option("--cmake-dir", "show", flag_value="cmake", help="Print the directory of flowpipeConfig.cmake.")
@click.option("--include-dir", "show", flag_value="include", help="Print the include directory.")
def sdk(show: str | None) -> None:
    """Locate the native stage SDK (C ABI and flow-pipe compatible C++ headers).

    \b
    cmake -S . -B build -Dflowpipe_DIR="$(flowpipe sdk --cmake-dir)"
    then, in CMakeLists.txt:
        find_package(flowpipe REQUIRED)
        target_link_libraries(stage_x PRIVATE flowpipe::flowpipe_runtime)
    """
    from ..native import sdk_paths

    paths = sdk_paths()
    if show == "cmake":
        click.echo(paths.cmake_dir)
    elif show == "include":
        click.echo(paths.include_dir)
    else:
        click.echo(f"include dir: {paths.include_dir}")
        click.echo(f"cmake dir:   {paths.cmake_dir}")
        click.echo(f"support:     {paths.support_source}")
