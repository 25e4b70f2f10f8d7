#ifndef BELLHOP_VMM_CONTROL_VERSION_H
#define BELLHOP_VMM_CONTROL_VERSION_H

/* bellhop's version: `bellhop --version`, the API's vmm_version, the man page. */
#define BELLHOP_VERSION "0.1.0"

#endif
