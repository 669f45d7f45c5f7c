# Print the location tables of this file's own code objects as CPython
# compiled them, with the line CPython itself gives each code unit
# (co_lines), for test_linetable.c: "CODE firstlineno hex" then "U unit line"
# (-1 where CPython has no line). Shapes: loops (lines going back), long
# expressions over several lines, big jumps (long and no-column forms),
# comprehensions, try/except, and a function compiled at line 100000.
import sys

if sys.version_info < (3, 11):
    print("SKIP python %d.%d has no 3.11 location table" % sys.version_info[:2])
    sys.exit(0)


def loop(n):
    t = 0
    for i in range(n):
        if i % 3:
            t += i
        else:
            t -= 1
    return t


def spread(a,
           b):
    x = (a +
         b *
         a
         - b)
    return [y * 2 for y in range(x)
            if y]


def far(a):
    if a:
        return 1



















    return 2


def guarded(f):
    try:
        return f()
    except (ValueError, KeyError) as e:
        return str(e)
    finally:
        pass


FAR = compile("\n" * 99999 + "def g(a):\n    b = a + 1\n\n\n    return b * (a\n    + 2)\n",
              "far.py", "exec")


def codes(c):
    yield c
    for k in c.co_consts:
        if hasattr(k, "co_linetable"):
            yield from codes(k)


for top in (loop.__code__, spread.__code__, far.__code__, guarded.__code__,
            compile(open(__file__).read(), __file__, "exec"), FAR):
    for c in codes(top):
        print("CODE %d %s" % (c.co_firstlineno, c.co_linetable.hex()))
        units = len(c.co_code) // 2
        line = [-1] * (units + 3)
        for start, end, ln in c.co_lines():
            for u in range(start // 2, end // 2):
                line[u] = -1 if ln is None else ln
        for u in range(units + 3):
            print("U %d %d" % (u, line[u]))
