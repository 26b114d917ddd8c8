#!/usr/bin/env python3
"""Turn a file into a C source defining `const char NAME[]` (NUL-terminated)
and `const size_t NAME_len`, so that the serve binary carries it: the
dashboard page is served from memory, with nothing to install beside it."""
import sys

src, out, name = sys.argv[1:4]
data = open(src, 'rb').read()
with open(out, 'w') as f:
    f.write('/* generated from %s by scripts/embed.py; do not edit */\n' % src.split('/')[-1])
    f.write('#include <stddef.h>\n\nconst char %s[] = {\n' % name)
    for i in range(0, len(data), 16):
        f.write('    ' + ', '.join('%d' % b for b in data[i:i + 16]) + ',\n')
    f.write('    0};\nconst size_t %s_len = %d;\n' % (name, len(data)))
