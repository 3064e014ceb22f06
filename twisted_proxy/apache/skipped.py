"""
The Apache lines that have no meaning in this proxy, each with the notice
that says why it is skipped, and the ones that ask for a web server's work
(serving files), which are errors.
"""

from __future__ import annotations

__all__ = ["FILE_SERVING", "NO_MEANING"]

_PROCESSES = "how httpd runs its processes: no meaning here, skipped"
_TLS_CACHE = "TLS sessions are kept as OpenSSL's defaults keep them here"
_FILES = "for files httpd serves itself: nothing serves files here"

NO_MEANING: dict[str, str] = {
    **dict.fromkeys(
        (
            "loadmodule",
            "serverlimit",
            "maxrequestworkers",
            "maxclients",
            "threadsperchild",
            "startservers",
            "minsparethreads",
            "maxsparethreads",
            "minspareservers",
            "maxspareservers",
            "maxconnectionsperchild",
            "maxrequestsperchild",
            "threadlimit",
            "user",
            "group",
            "pidfile",
            "mutex",
            "serveradmin",
            "errorlog",
            "defaultruntimedir",
            "serverroot",
            "enablesendfile",
            "enablemmap",
            "listenbacklog",
            "gracefulshutdowntimeout",
        ),
        _PROCESSES,
    ),
    **dict.fromkeys(
        (
            "sslsessioncache",
            "sslsessioncachetimeout",
            "sslsessiontickets",
            "sslstaplingcache",
        ),
        _TLS_CACHE,
    ),
    **dict.fromkeys(
        (
            "addtype",
            "removetype",
            "addencoding",
            "removehandler",
            "addoutputfilter",
            "adddefaultcharset",
            "addcharset",
            "addlanguage",
            "addhandler",
            "directoryindex",
            "accessfilename",
            "typesconfig",
            "mimemagicfile",
            "defaulttype",
            "indexoptions",
            "addicon",
            "addiconbytype",
            "addiconbyencoding",
            "defaulticon",
            "readmename",
            "headername",
            "indexignore",
            "languagepriority",
            "forcelanguagepriority",
        ),
        _FILES,
    ),
    **dict.fromkeys(
        ("browsermatch", "browsermatchnocase", "setenvif", "setenvifnocase"),
        "variables for httpd's own modules (old browsers' workarounds): none"
        " here reads them",
    ),
    "sslrandomseed": "OpenSSL seeds itself from the system here",
    **dict.fromkeys(
        ("a2enmod", "a2dismod", "a2ensite", "a2dissite", "a2enconf", "a2disconf"),
        "a shell command (Debian's module and site switches), not a directive:"
        " the modules whose lines are read here are always on",
    ),
    "hostnamelookups": "client addresses are logged as numbers here",
    "keepalive": "clients' connections are kept alive here (idle_timeout)",
    "maxkeepaliverequests": "a kept-alive connection serves any number of requests",
    "extendedstatus": "the status page always has the full detail here",
    "proxystatus": "the status page always shows the balancers here",
    "sslhonorcipherorder": "the server's cipher order is always preferred here",
    "sslcompression": "TLS compression is never on here",
    "sslpassphrasedialog": "keys are read unencrypted here: no passphrase asked",
    "define": "read as ${NAME} in the lines after it",
    "undefine": "read as ${NAME} in the lines after it",
}
"""Directive (lower case) to the notice saying why it is skipped."""

FILE_SERVING = frozenset(
    {
        "documentroot",
        "alias",
        "aliasmatch",
        "scriptalias",
        "scriptaliasmatch",
        "directory",
        "directorymatch",
        "files",
        "filesmatch",
        "options",
        "allowoverride",
        "userdir",
    }
)
"""What asks of a web server this is not: an error each."""
