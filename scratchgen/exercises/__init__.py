"""Graded exercises: the student writes a function of the library; the library's own tests grade it.

    scratchgen exercise list            the exercises, chapter by chapter
    scratchgen exercise start NAME      write a stub (signature, docstring, NotImplementedError)
    scratchgen exercise check NAME      run the function's tests with the student's version in place
    scratchgen exercise hint NAME       one hint at a time (progress kept in the student's folder)

:mod:`.catalogue` is the table of exercises (target function, lecture section, tests, hints);
:mod:`.workspace` writes stubs, loads solutions and keeps hint progress; :mod:`.grader` runs the
tests with the substitution, in a separate process.
"""
from .catalogue import EXERCISES, Exercise, get

__all__ = ["EXERCISES", "Exercise", "get"]
