//! Expressions and programs, with what Python 3 prints for them.

/// `print([expr])` and what Python 3 prints for it.
pub(super) const STRING_CASES: &[(&str, &str)] = &[
    (r#""a b".split()"#, r#"[['a', 'b']]"#),
    (r#""  a  b \t c\n".split()"#, r#"[['a', 'b', 'c']]"#),
    (r#""".split()"#, r#"[[]]"#),
    (r#""   ".split()"#, r#"[[]]"#),
    (r#"" a ".split(" ")"#, r#"[['', 'a', '']]"#),
    (r#""a,b,,c".split(",")"#, r#"[['a', 'b', '', 'c']]"#),
    (r#""".split(",")"#, r#"[['']]"#),
    (r#""a,b,c".split(",", 1)"#, r#"[['a', 'b,c']]"#),
    (r#""a,b,c".split(",", 0)"#, r#"[['a,b,c']]"#),
    (r#""a,b,c".split(",", -1)"#, r#"[['a', 'b', 'c']]"#),
    (r#""  a b  c  ".split(None, 1)"#, r#"[['a', 'b  c  ']]"#),
    (r#""  a b  c  ".split(maxsplit=1)"#, r#"[['a', 'b  c  ']]"#),
    (r#""a b c".split(sep=" ", maxsplit=1)"#, r#"[['a', 'b c']]"#),
    (r#""aaa".split("aa")"#, r#"[['', 'a']]"#),
    (r#""a,b,c".rsplit(",", 1)"#, r#"[['a,b', 'c']]"#),
    (r#""  a b  c  ".rsplit(None, 1)"#, r#"[['  a b', 'c']]"#),
    (r#""  a b  c  ".rsplit()"#, r#"[['a', 'b', 'c']]"#),
    (r#""aaa".rsplit("aa")"#, r#"[['a', '']]"#),
    (r#""a\x1cb".split()"#, r#"[['a', 'b']]"#),
    (r#""a\u00a0b".split()"#, r#"[['a', 'b']]"#),
    (
        r#""ab\ncd\r\nef\rgh\x0bij".splitlines()"#,
        r#"[['ab', 'cd', 'ef', 'gh', 'ij']]"#,
    ),
    (r#""ab\n".splitlines()"#, r#"[['ab']]"#),
    (r#""\n".splitlines()"#, r#"[['']]"#),
    (r#""".splitlines()"#, r#"[[]]"#),
    (r#""ab\r\ncd".splitlines(True)"#, r#"[['ab\r\n', 'cd']]"#),
    (r#"",".join(["a", "b", "c"])"#, r#"['a,b,c']"#),
    (r#""".join([])"#, r#"['']"#),
    (r#""-".join("abc")"#, r#"['a-b-c']"#),
    (r#"", ".join(str(i) for i in range(3))"#, r#"['0, 1, 2']"#),
    (r#""".join(reversed("hello"))"#, r#"['olleh']"#),
    (r#""  hi  ".strip()"#, r#"['hi']"#),
    (r#""  hi  ".lstrip()"#, r#"['hi  ']"#),
    (r#""  hi  ".rstrip()"#, r#"['  hi']"#),
    (r#""xxhixyx".strip("xy")"#, r#"['hi']"#),
    (r#""xxhixyx".lstrip("x")"#, r#"['hixyx']"#),
    (r#""xxhixyx".rstrip("xy")"#, r#"['xxhi']"#),
    (r#""\t\n hi \x1f".strip()"#, r#"['hi']"#),
    (r#""hi".strip("")"#, r#"['hi']"#),
    (r#""hi".strip(None)"#, r#"['hi']"#),
    (r#""Héllo World".lower()"#, r#"['héllo world']"#),
    (r#""Héllo World".upper()"#, r#"['HÉLLO WORLD']"#),
    (r#""straße".upper()"#, r#"['STRASSE']"#),
    (r#""abc".isalpha()"#, r#"[True]"#),
    (r#""".isalpha()"#, r#"[False]"#),
    (r#""ab1".isalpha()"#, r#"[False]"#),
    (r#""é".isalpha()"#, r#"[True]"#),
    (r#""123".isdigit()"#, r#"[True]"#),
    (r#""".isdigit()"#, r#"[False]"#),
    (r#""12.3".isdigit()"#, r#"[False]"#),
    (r#""-1".isdigit()"#, r#"[False]"#),
    (r#""a1".isalnum()"#, r#"[True]"#),
    (r#""".isalnum()"#, r#"[False]"#),
    (r#""a 1".isalnum()"#, r#"[False]"#),
    (r#"" \t\n".isspace()"#, r#"[True]"#),
    (r#""".isspace()"#, r#"[False]"#),
    (r#"" a".isspace()"#, r#"[False]"#),
    (r#""ABC1".isupper()"#, r#"[True]"#),
    (r#""ABc".isupper()"#, r#"[False]"#),
    (r#""123".isupper()"#, r#"[False]"#),
    (r#""".isupper()"#, r#"[False]"#),
    (r#""abc1".islower()"#, r#"[True]"#),
    (r#""aBc".islower()"#, r#"[False]"#),
    (r#""123".islower()"#, r#"[False]"#),
    (r#""Hello World".istitle()"#, r#"[True]"#),
    (r#""Hello world".istitle()"#, r#"[False]"#),
    (r#""123".istitle()"#, r#"[False]"#),
    (r#""hello".startswith("he")"#, r#"[True]"#),
    (r#""hello".startswith(("x", "he"))"#, r#"[True]"#),
    (r#""hello".startswith("")"#, r#"[True]"#),
    (r#""hello".startswith("lo", 3)"#, r#"[True]"#),
    (r#""hello".startswith("", 5)"#, r#"[True]"#),
    (r#""hello".startswith("", 6)"#, r#"[False]"#),
    (r#""hello".endswith("lo")"#, r#"[True]"#),
    (r#""hello".endswith(("x", "y"))"#, r#"[False]"#),
    (r#""hello".endswith("hel", 0, 3)"#, r#"[True]"#),
    (r#""hello".endswith("", -1)"#, r#"[True]"#),
    (r#""hello".replace("l", "L")"#, r#"['heLLo']"#),
    (r#""hello".replace("l", "L", 1)"#, r#"['heLlo']"#),
    (r#""hello".replace("", "-")"#, r#"['-h-e-l-l-o-']"#),
    (r#""hello".replace("", "-", 2)"#, r#"['-h-ello']"#),
    (r#""hello".replace("x", "y")"#, r#"['hello']"#),
    (r#""aaaa".replace("aa", "b")"#, r#"['bb']"#),
    (r#""hello".replace("l", "", -1)"#, r#"['heo']"#),
    (r#""banana".count("a")"#, r#"[3]"#),
    (r#""banana".count("an")"#, r#"[2]"#),
    (r#""aaaa".count("aa")"#, r#"[2]"#),
    (r#""banana".count("")"#, r#"[7]"#),
    (r#""banana".count("a", 2)"#, r#"[2]"#),
    (r#""banana".count("a", 2, 4)"#, r#"[1]"#),
    (r#""banana".count("", 10)"#, r#"[0]"#),
    (r#""banana".count("", 6)"#, r#"[1]"#),
    (r#""".count("")"#, r#"[1]"#),
    (r#""banana".find("an")"#, r#"[1]"#),
    (r#""banana".find("an", 2)"#, r#"[3]"#),
    (r#""banana".find("x")"#, r#"[-1]"#),
    (r#""banana".find("")"#, r#"[0]"#),
    (r#""banana".find("", 6)"#, r#"[6]"#),
    (r#""banana".find("", 7)"#, r#"[-1]"#),
    (r#""banana".find("a", -2)"#, r#"[5]"#),
    (r#""banana".rfind("an")"#, r#"[3]"#),
    (r#""banana".rfind("")"#, r#"[6]"#),
    (r#""banana".rfind("x")"#, r#"[-1]"#),
    (r#""banana".index("n")"#, r#"[2]"#),
    (r#""banana".rindex("n")"#, r#"[4]"#),
    (r#""héllo wörld".find("wö")"#, r#"[6]"#),
    (r#""héllo wörld".rfind("l")"#, r#"[9]"#),
    (r#""hello world".capitalize()"#, r#"['Hello world']"#),
    (r#""hELLO wORLD".capitalize()"#, r#"['Hello world']"#),
    (r#""".capitalize()"#, r#"['']"#),
    (r#""1abc".capitalize()"#, r#"['1abc']"#),
    (r#""Hello World 123".swapcase()"#, r#"['hELLO wORLD 123']"#),
    (
        r#""they're bill's friends".title()"#,
        r#"["They'Re Bill'S Friends"]"#,
    ),
    (
        r#""hello2world foo_bar".title()"#,
        r#"['Hello2World Foo_Bar']"#,
    ),
    (r#""".title()"#, r#"['']"#),
    (r#""42".zfill(5)"#, r#"['00042']"#),
    (r#""-42".zfill(5)"#, r#"['-0042']"#),
    (r#""+".zfill(3)"#, r#"['+00']"#),
    (r#""abc".zfill(2)"#, r#"['abc']"#),
    (r#""ab".ljust(5, "*")"#, r#"['ab***']"#),
    (r#""ab".rjust(5)"#, r#"['   ab']"#),
    (r#""ab".center(5)"#, r#"['  ab ']"#),
    (r#""abc".center(6, "-")"#, r#"['-abc--']"#),
    (r#""ab".center(6)"#, r#"['  ab  ']"#),
    (r#""a".center(4)"#, r#"[' a  ']"#),
    (r#""a-b-c".partition("-")"#, r#"[('a', '-', 'b-c')]"#),
    (r#""a-b-c".rpartition("-")"#, r#"[('a-b', '-', 'c')]"#),
    (r#""abc".partition("x")"#, r#"[('abc', '', '')]"#),
    (r#""abc".rpartition("x")"#, r#"[('', '', 'abc')]"#),
    (r#""prefix_body".removeprefix("prefix_")"#, r#"['body']"#),
    (r#""body.py".removesuffix(".py")"#, r#"['body']"#),
    (r#""abc".removeprefix("x")"#, r#"['abc']"#),
    (r#""{} and {}".format(1, "b")"#, r#"['1 and b']"#),
    (r#""{1}{0}".format("a", "b")"#, r#"['ba']"#),
    (r#""{x}-{y:.2f}".format(x=1, y=2.5)"#, r#"['1-2.50']"#),
    (r#""{{}} {}".format(7)"#, r#"['{} 7']"#),
    (r#""{!r}".format("a")"#, r#"["'a'"]"#),
    (r#""{:.1f}%".format(12.345)"#, r#"['12.3%']"#),
    (r#""hello"[::-1]"#, r#"['olleh']"#),
    (r#""hello"[1:4]"#, r#"['ell']"#),
    (r#""hello"[-3:]"#, r#"['llo']"#),
    (r#""hello"[::2]"#, r#"['hlo']"#),
    (r#""hello"[4:1:-1]"#, r#"['oll']"#),
    (r#""hello"[-1]"#, r#"['o']"#),
    (r#""héllo"[1]"#, r#"['é']"#),
    (r#""ab" * 3"#, r#"['ababab']"#),
    (r#"3 * "ab""#, r#"['ababab']"#),
    (r#""ab" * 0"#, r#"['']"#),
    (r#""ab" * -1"#, r#"['']"#),
];

/// `print([expr])` and what Python 3 prints for it.
pub(super) const BUILTIN_CASES: &[(&str, &str)] = &[
    (r#"all([])"#, r#"[True]"#),
    (r#"all([1, 2, 0])"#, r#"[False]"#),
    (r#"all(x > 0 for x in [1, 2])"#, r#"[True]"#),
    (r#"any([])"#, r#"[False]"#),
    (r#"any([0, "", None, 3])"#, r#"[True]"#),
    (r#"any(c.isdigit() for c in "ab1")"#, r#"[True]"#),
    (r#"chr(97)"#, r#"['a']"#),
    (r#"chr(0x1F600)"#, r#"['😀']"#),
    (r#"ord("a")"#, r#"[97]"#),
    (r#"ord("é")"#, r#"[233]"#),
    (r#"isinstance(1, int)"#, r#"[True]"#),
    (r#"isinstance(True, int)"#, r#"[True]"#),
    (r#"isinstance(1, bool)"#, r#"[False]"#),
    (r#"isinstance(1.0, int)"#, r#"[False]"#),
    (r#"isinstance(1, (str, float))"#, r#"[False]"#),
    (r#"isinstance(1.5, (str, float))"#, r#"[True]"#),
    (r#"isinstance("s", str)"#, r#"[True]"#),
    (r#"isinstance([], list)"#, r#"[True]"#),
    (r#"isinstance((), tuple)"#, r#"[True]"#),
    (r#"isinstance({}, dict)"#, r#"[True]"#),
    (r#"isinstance({1}, set)"#, r#"[True]"#),
    (r#"isinstance([], (tuple, dict))"#, r#"[False]"#),
    (r#"list(map(int, "1 2 3".split()))"#, r#"[[1, 2, 3]]"#),
    (
        r#"list(map(lambda x, y: x * y, [1, 2, 3], [4, 5]))"#,
        r#"[[4, 10]]"#,
    ),
    (r#"sum(map(int, "123"))"#, r#"[6]"#),
    (r#""".join(map(str, [1, 2, 3]))"#, r#"['123']"#),
    (
        r#"list(filter(None, [0, 1, "", "a", None, [], [0]]))"#,
        r#"[[1, 'a', [0]]]"#,
    ),
    (
        r#"list(filter(lambda x: x % 2, range(10)))"#,
        r#"[[1, 3, 5, 7, 9]]"#,
    ),
    (r#"bin(10)"#, r#"['0b1010']"#),
    (r#"bin(0)"#, r#"['0b0']"#),
    (r#"bin(-5)"#, r#"['-0b101']"#),
    (r#"hex(255)"#, r#"['0xff']"#),
    (r#"hex(-255)"#, r#"['-0xff']"#),
    (r#"oct(8)"#, r#"['0o10']"#),
    (r#"bin(True)"#, r#"['0b1']"#),
    (r#"type(1) == int"#, r#"[True]"#),
    (r#"type(True) == int"#, r#"[False]"#),
    (r#"type("a") is str"#, r#"[True]"#),
    (r#"type([]) == list"#, r#"[True]"#),
];

/// `print([expr])` and what Python 3 prints for it.
pub(super) const KEY_AND_LAMBDA_CASES: &[(&str, &str)] = &[
    (r#"sorted([3, 1, 2], key=lambda x: -x)"#, r#"[[3, 2, 1]]"#),
    (
        r#"sorted(["bb", "a", "ccc"], key=len)"#,
        r#"[['a', 'bb', 'ccc']]"#,
    ),
    (
        r#"sorted(["bb", "a", "ccc"], key=len, reverse=True)"#,
        r#"[['ccc', 'bb', 'a']]"#,
    ),
    (
        r#"sorted([(1, "b"), (0, "c"), (1, "a")], key=lambda p: p[0])"#,
        r#"[[(0, 'c'), (1, 'b'), (1, 'a')]]"#,
    ),
    (
        r#"sorted([(1, "b"), (0, "c"), (1, "a")], key=lambda p: p[0], reverse=True)"#,
        r#"[[(1, 'b'), (1, 'a'), (0, 'c')]]"#,
    ),
    (r#"sorted([3, 1, 2], reverse=True)"#, r#"[[3, 2, 1]]"#),
    (r#"sorted("hello")"#, r#"[['e', 'h', 'l', 'l', 'o']]"#),
    (r#"sorted({3: "a", 1: "b"})"#, r#"[[1, 3]]"#),
    (r#"sorted([1, -2, 3], key=abs)"#, r#"[[1, -2, 3]]"#),
    (r#"min([3, 1, 2], key=lambda x: -x)"#, r#"[3]"#),
    (r#"max(["bb", "a", "ccc", "ddd"], key=len)"#, r#"['ccc']"#),
    (r#"min(["bb", "a", "c"], key=len)"#, r#"['a']"#),
    (r#"max([], default=7)"#, r#"[7]"#),
    (r#"min([], key=len, default=None)"#, r#"[None]"#),
    (r#"max(1, 5, 3)"#, r#"[5]"#),
    (r#"max("abc", "b", key=len)"#, r#"['abc']"#),
    (r#"(lambda: 5)()"#, r#"[5]"#),
    (r#"(lambda x, y=2: x ** y)(3)"#, r#"[9]"#),
    (r#"(lambda x: lambda y: x + y)(1)(2)"#, r#"[3]"#),
];

/// `print([expr])` and what Python 3 prints for it.
pub(super) const SET_AND_DICT_CASES: &[(&str, &str)] = &[
    (r#"{1, 2, 3}"#, r#"[{1, 2, 3}]"#),
    (r#"{3, 1, 2, 1}"#, r#"[{1, 2, 3}]"#),
    (r#"set()"#, r#"[set()]"#),
    (r#"set([3, 1, 2, 1])"#, r#"[{1, 2, 3}]"#),
    (r#"sorted(set("hello"))"#, r#"[['e', 'h', 'l', 'o']]"#),
    (r#"list({5, 1, 3})"#, r#"[[1, 3, 5]]"#),
    (r#"len({1, 2, 2})"#, r#"[2]"#),
    (r#"2 in {1, 2}"#, r#"[True]"#),
    (r#"4 not in {1, 2}"#, r#"[True]"#),
    (r#"{1, 2, 3} | {3, 4}"#, r#"[{1, 2, 3, 4}]"#),
    (r#"{1, 2, 3} & {2, 3, 4}"#, r#"[{2, 3}]"#),
    (r#"{1, 2, 3} - {2}"#, r#"[{1, 3}]"#),
    (r#"{1, 2, 3} ^ {3, 4}"#, r#"[{1, 2, 4}]"#),
    (r#"{1, 2} == {2, 1}"#, r#"[True]"#),
    (r#"{1, 2} <= {1, 2, 3}"#, r#"[True]"#),
    (r#"{1, 2} < {1, 2}"#, r#"[False]"#),
    (r#"{1, 2, 3} > {1}"#, r#"[True]"#),
    (r#"{1, True, 1.0}"#, r#"[{1}]"#),
    (r#"{x % 3 for x in range(10)}"#, r#"[{0, 1, 2}]"#),
    (r#"sum({1, 2, 3})"#, r#"[6]"#),
    (r#"{1, 2}.union([5, 0])"#, r#"[{0, 1, 2, 5}]"#),
    (r#"{1, 2, 3}.intersection([2, 3], {3})"#, r#"[{3}]"#),
    (r#"{1, 2, 3}.difference([1])"#, r#"[{2, 3}]"#),
    (r#"{1, 2}.issubset([1, 2, 3])"#, r#"[True]"#),
    (r#"{1, 2}.issuperset({1})"#, r#"[True]"#),
    (r#"{1, 2}.isdisjoint({3})"#, r#"[True]"#),
    (r#"{1, 2}.symmetric_difference([2, 3])"#, r#"[{1, 3}]"#),
    (
        r#"{x: x * x for x in range(4)}"#,
        r#"[{0: 0, 1: 1, 2: 4, 3: 9}]"#,
    ),
    (
        r#"{c: i for i, c in enumerate("abca")}"#,
        r#"[{'a': 3, 'b': 1, 'c': 2}]"#,
    ),
];

/// `print([expr])` and what Python 3 prints for it.
pub(super) const BIT_CASES: &[(&str, &str)] = &[
    (r#"5 & 3"#, r#"[1]"#),
    (r#"5 | 3"#, r#"[7]"#),
    (r#"5 ^ 3"#, r#"[6]"#),
    (r#"~5"#, r#"[-6]"#),
    (r#"1 << 10"#, r#"[1024]"#),
    (r#"-8 >> 1"#, r#"[-4]"#),
    (r#"-1 >> 100"#, r#"[-1]"#),
    (r#"True & False"#, r#"[False]"#),
    (r#"True | False"#, r#"[True]"#),
    (r#"True ^ True"#, r#"[False]"#),
    (r#"6 & True"#, r#"[0]"#),
    (r#"1 + 2 | 4"#, r#"[7]"#),
    (r#"1 | 2 == 3"#, r#"[True]"#),
    (r#"dict([("a", 1), ("b", 2)])"#, r#"[{'a': 1, 'b': 2}]"#),
];

/// `print([expr])` and what Python 3 prints for it.
pub(super) const FORMAT_CASES: &[(&str, &str)] = &[
    (r#"format(True, '>5')"#, r#"['    1']"#),
    (r#"format(True, '')"#, r#"['True']"#),
    (r#"format(True, 'd')"#, r#"['1']"#),
    (r#"format(None, '')"#, r#"['None']"#),
    (r#"format(2.0, '.3')"#, r#"['2.0']"#),
    (r#"format(123.0, '.3')"#, r#"['1.23e+02']"#),
    (r#"format(0.0001, '.3')"#, r#"['0.0001']"#),
    (r#"format(0.00001, '.3')"#, r#"['1e-05']"#),
    (r#"format(1e16, '')"#, r#"['1e+16']"#),
    (r#"format(float('inf'), 'f')"#, r#"['inf']"#),
    (r#"format(float('nan'), 'F')"#, r#"['NAN']"#),
    (r#"format(-0.0, 'f')"#, r#"['-0.000000']"#),
    (r#"format(5, '<05')"#, r#"['50000']"#),
    (r#"format(5, 'x<05')"#, r#"['5xxxx']"#),
    (r#"format(1234.5, 'e')"#, r#"['1.234500e+03']"#),
    (r#"format(1234.5, '.2E')"#, r#"['1.23E+03']"#),
    (r#"format(0.0, 'e')"#, r#"['0.000000e+00']"#),
    (r#"format(1e-5, 'g')"#, r#"['1e-05']"#),
    (r#"format(123456789.0, 'g')"#, r#"['1.23457e+08']"#),
    (r#"format(100000.0, 'g')"#, r#"['100000']"#),
    (r#"format(1e6, 'g')"#, r#"['1e+06']"#),
    (r#"format(0.5, '.0%')"#, r#"['50%']"#),
    (r#"format(2.5, '.0f')"#, r#"['2']"#),
    (r#"format(3.5, '.0f')"#, r#"['4']"#),
    (r#"format(1234567, ',')"#, r#"['1,234,567']"#),
    (r#"format(255, '#x')"#, r#"['0xff']"#),
    (r#"format(255, '#010b')"#, r#"['0b11111111']"#),
    (r#"format(-5, '05')"#, r#"['-0005']"#),
    (r#"format(65, 'c')"#, r#"['A']"#),
    (r#"format('abc', '.2')"#, r#"['ab']"#),
    (r#"format('ab', '*^7')"#, r#"['**ab***']"#),
    (r#"format(3.14159, '+.2f')"#, r#"['+3.14']"#),
    (r#"format(42, ' d')"#, r#"[' 42']"#),
    (r#"format(10**6, '_')"#, r#"['1_000_000']"#),
    (r#"format(255, '_x')"#, r#"['ff']"#),
    (r#"format(65535, '_b')"#, r#"['1111_1111_1111_1111']"#),
    (r#"format(0.0, 'g')"#, r#"['0']"#),
    (r#"format(1.0, '.0e')"#, r#"['1e+00']"#),
    (r#"format(9.99, '.1f')"#, r#"['10.0']"#),
    (r#"format(0.000123456, '.3g')"#, r#"['0.000123']"#),
    (r#"format(2.0, '#g')"#, r#"['2.00000']"#),
    (r#"format(1.5, '')"#, r#"['1.5']"#),
    (r#"format(12.0, '5')"#, r#"[' 12.0']"#),
    (r#"format(1e22, '')"#, r#"['1e+22']"#),
    (r#"format(1e22, '.3')"#, r#"['1e+22']"#),
    (r#"format(1234567.891, ',.2f')"#, r#"['1,234,567.89']"#),
    (r#"format(-1234.5, '010,.1f')"#, r#"['-001,234.5']"#),
    (r#"format(5, 'b')"#, r#"['101']"#),
    (r#"format(5, '08b')"#, r#"['00000101']"#),
    (r#"format(-5, 'b')"#, r#"['-101']"#),
    (r#"format(255, 'X')"#, r#"['FF']"#),
    (r#"format(7, '>3')"#, r#"['  7']"#),
    (r#"format(7, '^5')"#, r#"['  7  ']"#),
    (r#"format(-7, '=+6')"#, r#"['-    7']"#),
    (r#"format(12, '%')"#, r#"['1200.000000%']"#),
    (r#"format(0.125, '.1%')"#, r#"['12.5%']"#),
    (r#"format(1/3, '.4')"#, r#"['0.3333']"#),
    (r#"format(2/3, '')"#, r#"['0.6666666666666666']"#),
    (r#"format(1e-7, '')"#, r#"['1e-07']"#),
    (r#"format(123.456, 'e')"#, r#"['1.234560e+02']"#),
    (r#"format(-2.5, 'g')"#, r#"['-2.5']"#),
    (r#"format(5, '.2f')"#, r#"['5.00']"#),
    (r#"format('x', '>3s')"#, r#"['  x']"#),
    (r#"format(3, '')"#, r#"['3']"#),
    (
        r#""{:>5}|{:<5}|{:^5}|".format("a", "b", "c")"#,
        r#"['    a|b    |  c  |']"#,
    ),
    (
        r#"f"{3:03d} {255:x} {5:b} {7:>3}""#,
        r#"['003 ff 101   7']"#,
    ),
    (
        r#"f"{3.14159:.2f} {1e-7} {1e16} {0.1 + 0.2}""#,
        r#"['3.14 1e-07 1e+16 0.30000000000000004']"#,
    ),
    (r#"f"{'abc':>6}|{'abc':<6}|""#, r#"['   abc|abc   |']"#),
    (
        r#"str(1e-05) + str(1.5e300) + str(-0.0) + str(123456789012345678.0)"#,
        r#"['1e-051.5e+300-0.01.2345678901234568e+17']"#,
    ),
    (
        r#"str(0.1) + " " + str(100.0) + " " + str(1/3)"#,
        r#"['0.1 100.0 0.3333333333333333']"#,
    ),
    (
        r#"repr("it's") + repr('a\nb') + repr([1, 'a']) + repr(2.5) + repr(None)"#,
        r#"['"it\'s"\'a\\nb\'[1, \'a\']2.5None']"#,
    ),
];

/// A program and what Python 3 prints running it.
pub(super) const TRY_PROGRAM: (&str, &str) = (
    r#"def parse(s):
    try:
        return int(s)
    except ValueError:
        return -1
print(parse("12"), parse("x"))
def safe_div(a, b):
    try:
        r = a // b
    except ZeroDivisionError:
        print("caught")
        return None
    else:
        print("no error")
        return r
    finally:
        print("finally", a, b)
print(safe_div(7, 2), safe_div(1, 0))
def get(d, k):
    try:
        return d[k]
    except (IndexError, KeyError):
        return "missing"
print(get({"a": 1}, "a"), get({"a": 1}, "b"), get([1], 3))
def nested():
    try:
        try:
            raise ValueError("inner")
        except TypeError:
            print("wrong")
        finally:
            print("inner finally")
    except ValueError as e:
        print("outer", e)
nested()
def reraise():
    try:
        try:
            [][0]
        except IndexError:
            print("handling")
            raise
    except Exception:
        print("re-raised caught")
reraise()
def raise_custom():
    try:
        raise RuntimeError("boom")
    except ValueError:
        print("no")
    except RuntimeError as e:
        print("runtime", e)
raise_custom()
def loop():
    out = []
    for x in ["1", "a", "3"]:
        try:
            out.append(int(x))
        except:
            continue
    return out
print(loop())
def ret_finally():
    try:
        return 1
    finally:
        print("cleanup")
print(ret_finally())
try:
    assert 1 == 2, "msg"
except AssertionError:
    print("assertion caught")
def raise_as_e():
    try:
        int("q")
    except ValueError as err:
        raise err
try:
    raise_as_e()
except ValueError:
    print("raise err caught")
try:
    x = 1
except ValueError:
    x = 2
else:
    x = x + 10
finally:
    x = x * 2
print(x)
for i in range(3):
    try:
        if i == 1:
            break
    finally:
        print("fin", i)
def raise_from():
    try:
        {}["k"]
    except KeyError as e:
        raise ValueError("bad key") from e
try:
    raise_from()
except ValueError as e:
    print(e)
try:
    1 / 0
except ArithmeticError:
    print("arith")
"#,
    r#"12 -1
no error
finally 7 2
caught
finally 1 0
3 None
1 missing missing
inner finally
outer inner
handling
re-raised caught
runtime boom
[1, 3]
cleanup
1
assertion caught
raise err caught
22
fin 0
fin 1
bad key
arith
"#,
);

/// A program and what Python 3 prints running it.
pub(super) const LAMBDA_PROGRAM: (&str, &str) = (
    r#"def outer(k):
    add = lambda x: x + k
    return [add(i) for i in range(3)]
print(outer(10))
def counts(words):
    freq = {}
    for w in words:
        freq[w] = freq.get(w, 0) + 1
    return sorted(freq, key=lambda w: (-freq[w], w))
print(counts("b a c b a b".split()))
def helper_user(n):
    def is_even(m):
        return m % 2 == 0
    def fact(m):
        return 1 if m <= 1 else m * fact(m - 1)
    return [x for x in range(n) if is_even(x)], fact(5)
print(helper_user(6))
def uses_outer(xs):
    limit = 3
    def small(x):
        return x < limit
    return list(filter(small, xs))
print(uses_outer([1, 5, 2, 7]))
def sort_pairs():
    pairs = [(1, 'b'), (2, 'a'), (1, 'a')]
    pairs.sort(key=lambda p: p[1])
    print(pairs)
    pairs.sort(key=lambda p: p[0], reverse=True)
    print(pairs)
    xs = [3, 1, 2]
    xs.sort(reverse=True)
    print(xs)
    xs.sort()
    print(xs)
sort_pairs()
make_adder = lambda n: (lambda x: x + n)
print(make_adder(5)(1))
print(max({'a': 3, 'b': 7, 'c': 1}.items(), key=lambda kv: kv[1]))
print(sorted(range(10), key=lambda x: (x % 3, -x)))
def compose(f, g):
    return lambda x: f(g(x))
inc_then_double = compose(lambda x: x * 2, lambda x: x + 1)
print(inc_then_double(3))
print(list(map(lambda p: p[0] * p[1], zip([1, 2, 3], [4, 5, 6]))))
def local_sibling():
    def a(x):
        return x + 1
    def b(x):
        return a(x) * 2
    return b(3)
print(local_sibling())
def default_args():
    f = lambda x, y=10: x + y
    return f(1), f(1, 2), f(y=5, x=1)
print(default_args())
"#,
    r#"[10, 11, 12]
['b', 'a', 'c']
([0, 2, 4], 120)
[1, 2]
[(2, 'a'), (1, 'a'), (1, 'b')]
[(2, 'a'), (1, 'a'), (1, 'b')]
[3, 2, 1]
[1, 2, 3]
6
('b', 7)
[9, 6, 3, 0, 7, 4, 1, 8, 5, 2]
8
[4, 10, 18]
8
(11, 3, 6)
"#,
);

/// A program and what Python 3 prints running it.
pub(super) const SET_PROGRAM: (&str, &str) = (
    r#"s = set()
s.add(3); s.add(1); s.add(3)
print(s, len(s))
s.update([5, 2], "")
print(s)
s.discard(10); s.remove(1)
print(s, 2 in s)
t = {2, 9}
s |= t
print(s)
s -= {9}
print(s)
seen = set()
out = []
for x in [3, 1, 3, 2, 1]:
    if x not in seen:
        seen.add(x)
        out.append(x)
print(out, sorted(seen))
try:
    s.remove(42)
except KeyError:
    print("no 42")
print(s.pop(), s)
print({c for c in "mississippi"} == set("misp"))
print(set([1, 2]) == {2, 1}, {1} != {1, 2}, bool(set()), bool({0}))
s.clear()
print(s, len(s))
print(sorted({-3, 10, -1, 4}), max({4, 9, 2}), min({4, 9, 2}))
print(list(set([5, 5, 1, 3])), sum(set([1, 1, 2])))
print(len(set(range(100))), sorted(set(range(5)) - {1, 3}))
"#,
    r#"{1, 3} 2
{1, 2, 3, 5}
{2, 3, 5} True
{2, 3, 5, 9}
{2, 3, 5}
[3, 1, 2] [1, 2, 3]
no 42
2 {3, 5}
True
True True False True
set() 0
[-3, -1, 4, 10] 9 2
[1, 3, 5] 3
100 [0, 2, 4]
"#,
);

/// A program and what Python 3 prints running it.
pub(super) const STRING_PROGRAM: (&str, &str) = (
    r#"def words_string(s):
    s = s.replace(",", " ")
    return s.split()
print(words_string("Hi, my name is John"))
def count_upper(s):
    return sum(1 for i in range(0, len(s), 2) if s[i] in "AEIOU")
print(count_upper("aBCdEf"))
def anti_shuffle(s):
    return " ".join("".join(sorted(list(w))) for w in s.split(" "))
print(anti_shuffle("Hello World!!!"))
def encrypt(s):
    return "".join(chr((ord(c) - 97 + 4) % 26 + 97) if c.isalpha() else c for c in s)
print(encrypt("hi there"))
def is_palindrome(s):
    return s == s[::-1]
print(is_palindrome("aba"), is_palindrome("ab"))
print("-" * 5, "ab" * 2)
print("ok")
print(5 & 3, 5 | 3, 5 ^ 3, ~5, 1 << 4, 256 >> 2, -9 >> 1)
x = 6
x &= 3
x |= 8
x ^= 1
x <<= 2
x >>= 1
print(x)
print(isinstance(3, (int, float)), isinstance("a", (list, tuple)))
print(type(3) == int, type(3.0) == float, type("") == str)
print(dict(zip("abc", range(3))), dict([(1, 2)], x=3), dict({"a": 1}))
print({k: v for k, v in [("a", 1), ("b", 2), ("a", 3)]})
print("\x41\u00e9\x0a".split(), "\101")
"#,
    r#"['Hi', 'my', 'name', 'is', 'John']
1
Hello !!!Wdlor
lm xlivi
True False
----- abab
ok
1 7 6 -6 16 64 -5
22
True False
True True True
{'a': 0, 'b': 1, 'c': 2} {1: 2, 'x': 3} {'a': 1}
{'a': 3, 'b': 2}
['Aé'] A
"#,
);

/// A program and what Python 3 prints running it.
pub(super) const CLOSURE_PROGRAM: (&str, &str) = (
    r#"def solve(grid):
    n = len(grid)
    visited = set()
    def ok(i):
        return 0 <= i < n and i not in visited
    out = []
    for i in range(-1, n + 1):
        if ok(i):
            visited.add(i)
            out.append(ok(i))
    return out, sorted(visited)
print(solve([1, 2, 3]))
def memo_fib(n):
    memo = {}
    def fib(k):
        if k in memo:
            return memo[k]
        r = k if k < 2 else fib(k - 1) + fib(k - 2)
        memo[k] = r
        return r
    return fib(n), len(memo)
print(memo_fib(30))
def collect(xs):
    result = []
    def add(x):
        result.append(x * 2)
    for x in xs:
        add(x)
    return result
print(collect([1, 2, 3]))
def later():
    def b():
        return a() + 1
    def a():
        return 41
    return b()
print(later())
def counter():
    count = 0
    def get():
        return count
    count = 5
    return get()
print(counter())
def make_multipliers():
    return [lambda x, i=i: x * i for i in range(3)]
print([m(10) for m in make_multipliers()])
def make_adder(n):
    def add(x):
        return x + n
    return add
add5 = make_adder(5)
print(add5(1), make_adder(2)(2))
def outer():
    def rec(n):
        return 0 if n == 0 else 1 + rec(n - 1)
    return rec
print(outer()(5))
def apply(f, x):
    return f(x)
def user():
    k = 3
    return apply(lambda v: v * k, 7)
print(user())
def shadow(x):
    f = lambda x: x + 1
    return f(10), x
print(shadow(1))
"#,
    r#"([False, False, False], [0, 1, 2])
(832040, 31)
[2, 4, 6]
42
5
[0, 10, 20]
6 4
5
21
(11, 1)
"#,
);

/// A program using `collections` as programs do, and what Python 3 (3.11) prints running
/// it.
pub(super) const COLLECTIONS_PROGRAM: (&str, &str) = (
    r#"from collections import Counter, defaultdict, OrderedDict, deque
import collections
def word_counts(text):
    return Counter(text.lower().split())
c = word_counts("the quick fox the lazy dog The end quick")
print(c)
print(c["the"], c["cat"], "cat" in c, len(c), c.get("cat"))
print(c.most_common(2))
print(Counter("abracadabra").most_common(3), Counter("bca").most_common())
c["cat"] += 1
c.update(["dog", "dog"])
c.subtract({"the": 3})
print(c, c.total())
print(sorted(c.elements()), sorted(c, key=lambda k: (-c[k], k))[:2])
print(Counter(a=2, b=1) == {"a": 2, "b": 1}, Counter("listen") == Counter("silent"))
print(Counter(a=1, b=0) == Counter(a=1), Counter("ab") == Counter("abb"))
print(Counter("aab") + Counter("bcc"), Counter("aab") - Counter("abc"))
print(Counter("aab") | Counter("abb"), Counter("aab") & Counter("abb"))
print(Counter(), Counter({"x": 3, "y": 5}), dict(Counter("aab")))
groups = defaultdict(list)
for w in ["apple", "avocado", "banana", "blueberry", "cherry"]:
    groups[w[0]].append(w)
print(groups)
print(groups == {"a": ["apple", "avocado"], "b": ["banana", "blueberry"], "c": ["cherry"]})
print(groups["z"], len(groups), groups.get("y"), "y" in groups, len(groups))
counts = defaultdict(int)
for ch in "mississippi":
    counts[ch] += 1
print(counts, dict(counts) == {"m": 1, "i": 4, "s": 4, "p": 2})
seen = defaultdict(set)
seen["x"].add(2)
seen["x"].add(1)
names = defaultdict(lambda: "?")
print(seen, names["k"], dict(names))
text = defaultdict(str)
total = defaultdict(float)
text["a"] += "x"
total["b"] += 1.5
print(text, total)
od = OrderedDict([("b", 1), ("a", 2)])
od["c"] = 3
od.move_to_end("b")
print(od, list(od), od == {"a": 2, "b": 1, "c": 3})
q = deque([1, 2, 3])
q.append(4)
q.appendleft(0)
print(q, len(q), q[0], q[-1], bool(q), bool(deque()))
print(q.popleft(), q.pop(), q, q == deque([1, 2, 3]), q == [1, 2, 3])
q.extend([7, 8])
q.rotate(2)
print(q, list(q), [x * 2 for x in q])
window = deque(maxlen=3)
for i in range(5):
    window.append(i)
print(window, sum(window))
def bfs(start, goal):
    queue = deque([(start, 0)])
    visited = {start}
    while queue:
        node, dist = queue.popleft()
        if node == goal:
            return dist
        for nxt in (node + 1, node * 2):
            if nxt <= goal and nxt not in visited:
                visited.add(nxt)
                queue.append((nxt, dist + 1))
    return -1
print(bfs(1, 37))
try:
    empty = deque()
    empty.popleft()
except IndexError:
    print("empty deque")
print(collections.Counter("aab"), collections.deque([1]), type(c), isinstance(c, dict))
"#,
    r#"Counter({'the': 3, 'quick': 2, 'fox': 1, 'lazy': 1, 'dog': 1, 'end': 1})
3 0 False 6 None
[('the', 3), ('quick', 2)]
[('a', 5), ('b', 2), ('r', 2)] [('b', 1), ('c', 1), ('a', 1)]
Counter({'dog': 3, 'quick': 2, 'fox': 1, 'lazy': 1, 'end': 1, 'cat': 1, 'the': 0}) 9
['cat', 'dog', 'dog', 'dog', 'end', 'fox', 'lazy', 'quick', 'quick'] ['dog', 'quick']
True True
True False
Counter({'a': 2, 'b': 2, 'c': 2}) Counter({'a': 1})
Counter({'a': 2, 'b': 2}) Counter({'a': 1, 'b': 1})
Counter() Counter({'y': 5, 'x': 3}) {'a': 2, 'b': 1}
defaultdict(<class 'list'>, {'a': ['apple', 'avocado'], 'b': ['banana', 'blueberry'], 'c': ['cherry']})
True
[] 4 None False 4
defaultdict(<class 'int'>, {'m': 1, 'i': 4, 's': 4, 'p': 2}) True
defaultdict(<class 'set'>, {'x': {1, 2}}) ? {'k': '?'}
defaultdict(<class 'str'>, {'a': 'x'}) defaultdict(<class 'float'>, {'b': 1.5})
OrderedDict([('a', 2), ('c', 3), ('b', 1)]) ['a', 'c', 'b'] True
deque([0, 1, 2, 3, 4]) 5 0 4 True False
0 4 deque([1, 2, 3]) True False
deque([7, 8, 1, 2, 3]) [7, 8, 1, 2, 3] [14, 16, 2, 4, 6]
deque([2, 3, 4], maxlen=3) 9
7
empty deque
Counter({'a': 2, 'b': 1}) deque([1]) <class 'collections.Counter'> True
"#,
);

/// Imports of `collections` (and `math`) with `as` and `*`, methods that change an item
/// of a variable in place, and the rest of `OrderedDict` and `deque`; what Python 3
/// (3.11) prints.
pub(super) const COLLECTIONS_MORE_PROGRAM: (&str, &str) = (
    r#"from collections import Counter as C, deque as dq
from collections import *
import collections as co, math as m
print(C("aab"), dq([1]), co.OrderedDict(a=1), m.sqrt(16), type(defaultdict(int)))
index = {"x": [1]}
index["x"].append(2)
rows = [[3], [2]]
rows[1].append(1)
rows[0].extend([5, 4])
rows[0].sort()
print(index, rows)
nested = defaultdict(list)
nested["a"].extend([3, 1, 2])
nested["a"].sort(reverse=True)
nested["b"].sort()
top = nested["a"].pop()
print(top, nested)
letters = defaultdict(Counter)
letters["w"].update("hello")
print(letters, letters["w"]["l"])
hits = C()
for w in "a b a c b a".split():
    hits[w] += 1
print(hits.most_common(1)[0][0], max(hits, key=hits.get), hits.get("q", 0), hits["q"], hits)
snapshot = hits.copy()
snapshot["a"] = 0
print(snapshot, snapshot == hits, type(snapshot))
od = OrderedDict()
od["a"] = 1
od["b"] = 2
od["c"] = 3
first = od.popitem(last=False)
final = od.popitem()
print(first, final, od, OrderedDict(a=1, b=2) == OrderedDict(b=2, a=1))
d = {"x": 1, "y": 2}
p = d.popitem()
z = d.setdefault("z", 5)
x = d.setdefault("x", 9)
print(p, z, x, d)
e = dq([1, 2, 3], maxlen=5)
e.extend(range(4, 9))
print(e)
e.extendleft("ab")
print(e)
r = dq([3, 1, 2])
print(r.count(1), r.index(2), 2 in r, list(reversed(r)), sorted(r), r.copy())
r.remove(1)
r.insert(0, 9)
r.rotate(-1)
print(r)
r.clear()
print(r, deque("abc", 2))
"#,
    r#"Counter({'a': 2, 'b': 1}) deque([1]) OrderedDict([('a', 1)]) 4.0 <class 'collections.defaultdict'>
{'x': [1, 2]} [[3, 4, 5], [2, 1]]
1 defaultdict(<class 'list'>, {'a': [3, 2], 'b': []})
defaultdict(<class 'collections.Counter'>, {'w': Counter({'l': 2, 'h': 1, 'e': 1, 'o': 1})}) 2
a a 0 0 Counter({'a': 3, 'b': 2, 'c': 1})
Counter({'b': 2, 'c': 1, 'a': 0}) False <class 'collections.Counter'>
('a', 1) ('c', 3) OrderedDict([('b', 2)]) False
('y', 2) 5 1 {'x': 1, 'z': 5}
deque([4, 5, 6, 7, 8], maxlen=5)
deque(['b', 'a', 4, 5, 6], maxlen=5)
1 2 True [2, 1, 3] [1, 2, 3] deque([3, 1, 2])
deque([3, 2, 9])
deque([]) deque(['b', 'c'], maxlen=2)
"#,
);
