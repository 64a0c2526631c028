"""The MMRec patch series (``series`` + ``*.patch``), shipped as package data; see README.md here
and :mod:`mmrec_motor.upstream`."""
