"""synth.py's text side: a small grammar of English that says what a clip's plan does, MotionBase-style
(paper §3 ⑤ "Hierarchical Motion Descriptions", appendix A.2): 2-3 whole-body captions + one upper-body
and one lower-body sentence (docs/data.md#captions).

A caption is a frame (a sentence shape: simple or progressive, a fronted count or adverbial, "first ... then
...", "... before ...", "... and ...") filled with a subject and one verb phrase per segment; each kind has
several verb phrases, and counts, angles, directions and speeds several wordings ("3 times", "thrice").
Phrasings are held out by split: a (frame, verb phrase, kind) combination for which held_out() is true is
never said in train, only in val, test and ood, whose clips carry a *new* caption of that kind beside the
*plain* one (the first frame and phrase with the first wordings, said in train too). Every word of a held-out
caption is a train word: each verb phrase is said with other frames in train, and each frame with others."""

import zlib

SUBJECTS = ("a person", "someone", "a man", "a woman", "the person", "a figure", "the man", "the woman",
            "a boy", "a girl")
VERBS = {  # kind -> verb phrases, first word the verb's base form; {field}s from _field
    "stand": ("stand still", "stand in place", "stay standing without moving much", "remain still",
              "wait in place"),
    "walk": ("walk {dir} {speed}", "take a few {speed_adj} steps {dir}", "move {dir} {speed} on foot",
             "step {dir} {speed}", "stroll {dir} {speed}"),
    "sidestep": ("walk sideways to the {side}", "side-step to the {side}", "shuffle sideways to the {side}",
                 "move sideways toward the {side}", "take side steps to the {side}"),
    "circle": ("walk in a circle to the {side}", "walk around in a {clock} circle",
               "walk a full circle, turning {side}", "circle around to the {side} on foot",
               "make a loop to the {side} on foot"),
    "run": ("{run_verb} {dir}", "{run_verb} straight ahead", "go for a {run_noun} {dir}", "run {dir} {speed}",
            "{run_verb} ahead without stopping"),
    "turn": ("turn {side} by {angle}", "turn {angle} to the {side}", "rotate {angle} to the {side}",
             "pivot {angle} toward the {side}", "{turn_special} to the {side}"),
    "jump": ("jump up and down {times}", "jump in place {times}", "do {count_n} vertical jump{s}",
             "leap up {times}", "spring into the air {times}"),
    "squat": ("squat down {times}", "do {count_n} squat{s}", "bend the knees into a squat {times}",
              "crouch down {times}", "squat all the way down {times}",
              "drop into a squat and ^come back up {times}"),
    "kick": ("kick with the {side} leg", "kick forward with the {side} foot", "do a {side} leg kick",
             "throw a kick with the {side} leg", "kick the {side} leg out in front"),
    "lunge": ("lunge forward with the {side} leg", "step into a lunge with the {side} leg in front",
              "do a forward lunge on the {side} leg", "lunge on the {side} leg"),
    "hop": ("hop on the {side} foot {times}", "hop {times} on the {side} leg",
            "balance on the {side} leg and ^hop {times}"),
    "sit_down": ("sit down", "sit down on a chair", "lower into a seated position", "take a seat",
                 "sit down on a seat behind"),
    "stand_up": ("stand up", "get up from a chair", "rise from a seated position",
                 "rise to a standing position", "get up from a seat"),
    "wave": ("wave {the_hand}", "wave with {the_hand}", "lift {the_hand} to wave",
             "wave hello with {the_hand}", "give a wave with {the_hand}"),
    "raise": ("raise {the_arm} above the head", "lift {the_arm} up high",
              "put {the_arm} up in the air and back down", "hold {the_arm} up over the head for a moment",
              "raise {the_arm} up and ^lower it again"),
    "clap": ("clap the hands {times}", "clap {times}", "clap {times} in front of the chest",
             "give {count_n} clap{s}", "bring the hands together {times}"),
    "punch": ("punch forward with {the_hand} {times}", "throw {count_n} punch{es} with {the_hand}",
              "box with {the_hand}, punching {times}", "jab {times} with {the_hand}",
              "strike forward {times} with {the_hand}"),
    "arms_out": ("stretch both arms out to the sides", "hold the arms out sideways",
                 "spread the arms wide to the sides", "extend the arms out to the sides",
                 "open the arms wide"),
    "reach": ("reach forward with the {side} hand", "lean forward and ^reach out with the {side} arm",
              "extend the {side} arm forward to grab something", "reach out ahead with the {side} hand"),
    "hips": ("put the hands on the hips", "place both hands on the hips", "rest the hands on the hips",
             "set the hands on the hips"),
    "stretch": ("raise both arms overhead and ^lean to the {side}, then to the {other}",
                "stretch, arms overhead, bending to the {side} and then the {other}",
                "do a side stretch with the arms up, first to the {side}, then the {other}",
                "stretch the arms up and ^bend to the {side} and then to the {other}"),
    # still poses (synth.STATIC_POSES): "still:<pose>"
    "still:stand": ("stand still with the arms down", "stand upright, arms relaxed", "stand motionless"),
    "still:raise": ("stand with {the_arm} raised", "hold {the_arm} straight up", "keep {the_arm} raised"),
    "still:arms_out": ("stand with the arms stretched out to the sides", "hold a t-pose",
                       "keep the arms out sideways"),
    "still:hips": ("stand with the hands on the hips", "stand, hands on hips", "keep the hands on the hips"),
    "still:reach": ("lean forward reaching out with the {side} hand", "reach ahead with the {side} arm",
                    "hold the {side} arm out in front"),
    "still:squat": ("stay in a deep squat", "hold a low squat", "stay crouched in a squat"),
    "still:sit": ("sit on a chair", "sit on a chair without moving", "stay seated"),
    "still:kick": ("freeze mid-kick with the {side} leg", "hold the {side} leg up in a kick",
                   "keep the {side} leg up in front"),
    "still:lunge": ("hold a lunge with the {side} leg in front", "stay low in a {side} leg lunge",
                    "keep still in a lunge on the {side} leg")}
# frames: the sentence shapes; {a_s}: the first segment's verb phrase with its verb in the third person,
# {a_ing}: as a gerund, {rest_s} / {rest_ing}: the later segments', joined
SINGLE = ("{S} {a_s}.", "{S} is {a_ing}.", "{front}, {S} {a_s}.", "{S} can be seen {a_ing}.",
          "we see {S} {a_ing}.")
MULTI = ("{S} {a_s}{then}{rest_s}.", "first, {S} {a_s}, then {rest_s}.", "{S} {a_s} before {rest_ing}.",
         "{S} {a_s} and {rest_s}.", "{S} is {a_ing}, then {rest_ing}.", "after {a_ing}, {S} {rest_s}.",
         "{S} {a_s}; after that, the person {rest_s}.", "we see {S} {a_ing}, then {rest_ing}.")
FRAMES = SINGLE + MULTI
# the words just before a verb phrase, for each frame's first segment and its later ones: what is held out is
# a verb phrase in such a context ("someone is jumping ..." never in train), so that a held-out caption's
# words around its verb make trigrams train never had, while every frame keeps other verb phrases in train
CONTEXTS = ("subject", "is", "can be seen", "we see", "then", "after", "and", "before", "then-ing", "while",
            "at the same time")
FRAME_CONTEXTS = ((0, None), (1, None), (0, None), (2, None), (3, None),  # SINGLE's, then MULTI's
                  (0, 4), (0, 4), (0, 7), (0, 6), (1, 8), (5, 0), (0, 0), (3, 8))
WORDS = {  # field -> {parameter value: wordings, the plain one first}
    "times": {1: ("once", "one time"), 2: ("twice", "two times", "2 times"),
              3: ("three times", "3 times", "thrice"), 4: ("four times", "4 times"),
              5: ("five times", "5 times")},
    "count_n": {1: ("one", "a single", "1"), 2: ("two", "2"), 3: ("three", "3"), 4: ("four", "4"),
                5: ("five", "5")},
    "angle": {45: ("45 degrees", "forty-five degrees"), 90: ("90 degrees", "ninety degrees"),
              135: ("135 degrees", "a hundred and thirty-five degrees"),
              180: ("180 degrees", "a hundred and eighty degrees")},
    "turn_special": {90: ("make a quarter turn",), 180: ("turn around", "turn all the way around")},
    "dir": {"forward": ("forward", "forwards", "ahead"), "backward": ("backward", "backwards", "in reverse")},
    "speed": {"slow": ("slowly", "at a slow pace", "at a relaxed pace"), "normal": ("", "at a steady pace"),
              "fast": ("quickly", "at a fast pace", "briskly")},
    "speed_adj": {"slow": ("slow", "small, slow"), "normal": ("",), "fast": ("quick", "fast")},
    "run_verb": {"slow": ("jog",), "normal": ("run",), "fast": ("sprint",)},
    "run_noun": {"slow": ("jog",), "normal": ("run",), "fast": ("sprint",)}}
GENERIC_FRONT = ("here", "in this clip", "at one point")  # the fronted adverbial where nothing is counted
THEN = (", then ", ", and then ", " and then ", ", after that ")
WHILE = (" while {}", ", {} at the same time")  # a gesture on a whole-body kind: "walks while waving"
PARTS = {  # kind -> (upper-body sentences, lower-body sentences): the part-level descriptions
    "stand": (("the arms hang relaxed at the sides", "the arms rest by the body"),
              ("the legs stand still with both feet on the ground", "both feet stay planted")),
    "walk": (("the arms swing back and forth with the steps", "the arms swing gently"),
             ("the legs take {speed_adj} steps {dir}", "the feet step {dir} {speed}")),
    "sidestep": (("the arms stay loose at the sides",), ("the legs step sideways to the {side}",
                                                         "the feet move sideways toward the {side}")),
    "circle": (("the arms swing with the steps",), ("the legs walk along a circle to the {side}",)),
    "run": (("the bent arms pump back and forth",), ("the legs {run_noun} {dir}",)),
    "turn": (("the arms hang loosely",), ("the feet step in place while the body turns {angle} {side}",)),
    "jump": (("the arms swing up with each jump",), ("the legs bend and push off {times}",)),
    "squat": (("the arms reach forward for balance",), ("the knees bend deeply into a squat {times}",
                                                        "the legs bend and straighten {times}")),
    "kick": (("the arms move out for balance",), ("the {side} leg swings forward in a kick",)),
    "lunge": (("the arms stay near the body",), ("the {side} leg steps forward and both knees bend",)),
    "hop": (("the arms are held out for balance",),
            ("the {other} leg is lifted, the {side} leg hops {times}",)),
    "sit_down": (("the arms move forward as the body lowers",), ("the knees and hips bend to sit down",)),
    "stand_up": (("the arms move forward as the body rises",), ("the legs straighten to stand up",)),
    "wave": (("{the_hand} waves side to side at head height", "{the_hand} waves near the head"), ("",)),
    "raise": (("{the_arm} rises straight up and comes back down", "{the_arm} goes up and down again"), ("",)),
    "clap": (("the hands come together {times} in front of the chest", "the hands clap {times}"), ("",)),
    "punch": (("{the_hand} punches forward {times}", "{the_hand} jabs forward {times}"), ("",)),
    "arms_out": (("both arms extend straight out to the sides", "the arms spread out wide"), ("",)),
    "reach": (("the {side} arm reaches forward as the back bends",), ("",)),
    "hips": (("both hands rest on the hips", "the hands sit on the hips"), ("",)),
    "stretch": (("both arms stretch overhead, the torso bends {side} then {other}",), ("",))}
STILL_PARTS = {  # pose -> (upper-body sentence, lower-body sentence), said after "held still, "
    "stand": (PARTS["stand"][0][0], PARTS["stand"][1][0]),
    "raise": ("{the_arm} raised straight up", PARTS["stand"][1][0]),
    "arms_out": ("both arms held straight out to the sides", PARTS["stand"][1][0]),
    "hips": ("both hands on the hips, elbows out", PARTS["stand"][1][0]),
    "reach": ("the {side} arm stretched forward, the back bent", PARTS["stand"][1][0]),
    "squat": ("the arms held forward", "the knees and hips deeply bent in a squat"),
    "sit": ("the arms resting", "the knees bent at a right angle, sitting"),
    "kick": ("the arms out for balance", "the {side} leg kicked up in front"),
    "lunge": ("the arms near the body", "the {side} leg forward with the knee bent, the other leg behind")}
DOUBLED = ("run", "jog", "clap", "jab", "drop", "step", "side-step", "squat", "sit", "get", "put", "set",
           "hop")  # verbs whose last consonant doubles before "ing"


def inflect(phrase, form):
    """The verb phrase with its verbs (the first word, and each one marked ^: "lean and ^reach") in the third
    person ("s") or as gerunds ("ing")."""
    words = phrase.split(" ")
    for i, verb in enumerate(words):
        if i == 0 or verb.startswith("^"):
            verb = verb.removeprefix("^")
            if form == "s":
                words[i] = verb + ("es" if verb.endswith(("s", "sh", "ch", "x", "z", "o")) else "s")
            else:
                words[i] = (verb + verb[-1] if verb in DOUBLED else verb.removesuffix("e")) + "ing"
    return " ".join(words)


class _Fields(dict):
    """A phrase's fill-in fields, each drawn when the phrase first uses it (one wording per caption). With a
    template and mode "train" or "new", a wording held out with the template (held_wording) is never said in
    train, and said where it can be in "new"."""

    def __init__(self, p, rng, template="", mode="train"):
        super().__init__()
        self.p, self.rng, self.template, self.mode = p, rng, template, mode

    def __missing__(self, name):
        p, side, count = self.p, self.p.get("side", ""), self.p.get("count", 1)
        value = {"side": side, "other": {"left": "right", "right": "left"}.get(side, ""),
                 "clock": "counterclockwise" if side == "left" else "clockwise",
                 "the_arm": "both arms" if side == "both" else f"the {side} arm",
                 "the_hand": "both hands" if side == "both" else f"the {side} hand",
                 "s": "" if count == 1 else "s", "es": "" if count == 1 else "es"}.get(name)
        if value is None:
            key = {"times": count, "count_n": count, "angle": p.get("angle"), "turn_special": p.get("angle"),
                   "dir": p.get("dir", "forward")}.get(name, p.get("speed", "normal"))
            said = WORDS[name][key]
            kept = [w for w in said if held_wording(self.template, said, w) == (self.mode == "new")]
            value = pick(self.rng, kept or said)
        self[name] = value
        return value


class _First:  # the plain caption's "rng": every choice its first
    @staticmethod
    def integers(n):
        return 0


def _tidy(text):
    return " ".join(text.split()).replace(" ,", ",").replace(" .", ".").replace(" ;", ";")


def held_out(context, lemma):
    """Is the verb `lemma` after CONTEXTS[context] a phrasing kept out of train ("someone is leaping")? A
    third of the contexts a verb takes a gerund in, never the third person after a subject or "then" (so every
    verb keeps both forms in train, and the plain captions are train's)."""
    return context not in (0, 4) and (context + zlib.crc32(lemma.encode())) % 3 == 1


def held_wording(template, wordings, wording):
    """Is this wording of a field (a count, an angle, a direction, a speed) in this verb phrase kept out of
    train ("leaps up thrice")? About half of those that are not the field's first (its plain) wording."""
    return wording != wordings[0] and bool(template) and zlib.crc32(f"{template}|{wording}".encode()) % 2 == 0


def held_subject(context, subject):
    """Is SUBJECTS[subject] before "is", "can be seen" (after "we see") kept out of train? One in three."""
    return context in (1, 2, 3) and (context + subject) % 3 == 1


def _lemma(template, p):  # the verb a phrase starts with ("{run_verb} ..." -> its wording for p)
    first = template.split()[0]
    return _Fields(p, _First())[first[1:-1]].split()[0] if first.startswith("{") else first


def _template(kind, p, context, rng, mode):
    """A verb phrase of `kind` after CONTEXTS[context]: its first (mode "plain"), one said in train ("train"),
    one held out ("new"); None if there is none."""
    verbs = [v for v in VERBS[kind] if "{turn_special}" not in v or p.get("angle") in (90, 180)]
    if mode != "plain":
        verbs = [v for v in verbs if held_out(context, _lemma(v, p)) == (mode == "new")]
    return pick(rng, verbs) if verbs else None


def _phrase(unit, context, rng, mode, front=None):
    """One segment's verb phrase in both forms {"s", "ing"}, or None when `mode` has none ("new" for the
    whole-body verb; a gesture riding on it is new where it can be)."""
    (kind, p), gesture = unit
    template = _template(kind, p, context, rng, mode)
    if template is None:
        return None
    fields = _Fields(p, rng, template, "train" if mode == "plain" else mode)
    if front is not None:  # a fronted count or speed leaves the verb phrase
        slot = next((s for s in ("times", "speed") if "{" + s + "}" in template and fields[s]), None)
        front.append(fields[slot] if slot else pick(rng, GENERIC_FRONT))
        fields[slot or "_"] = ""
    forms = {f: inflect(_tidy(template.format_map(fields)), f) for f in ("s", "ing")}
    if gesture:  # "walks forward while waving the left hand"
        joiner = pick(rng, (0, 1))
        said = (mode == "new" and _template(*gesture, 9 + joiner, rng, "new")
                or _template(*gesture, 9 + joiner, rng, "plain" if mode == "plain" else "train"))
        said = inflect(_tidy(said.format_map(_Fields(gesture[1], rng, said, mode))), "ing")
        forms = {f: v + WHILE[joiner].format(said) for f, v in forms.items()}
    return forms


def caption(units, rng, mode="train"):
    """A whole-body caption of the units ((kind, params), gesture (kind, params) or None), one per segment;
    mode "plain", "train" or "new" (a held-out phrasing of the first unit, and of the others and the subject
    where they have one; None when the first has none)."""
    frames = range(len(SINGLE)) if len(units) == 1 else range(len(SINGLE), len(FRAMES))
    rng = _First() if mode == "plain" else rng
    order = [frames[0]] if mode == "plain" else [frames[i] for i in rng.permutation(len(frames))]
    for frame in order:
        front = [] if "{front}" in FRAMES[frame] else None
        first_context, rest_context = FRAME_CONTEXTS[frame]
        first = _phrase(units[0], first_context, rng, mode, front)
        rest = [mode == "new" and _phrase(u, rest_context, rng, "new")
                or _phrase(u, rest_context, rng, "plain" if mode == "plain" else "train") for u in units[1:]]
        if first is None or None in rest:
            continue
        then = pick(rng, THEN)
        joined = {f"rest_{f}": then.join(r[f] for r in rest) for f in ("s", "ing")}
        subjects = [i for i in range(len(SUBJECTS)) if held_subject(first_context, i) == (mode == "new")]
        subject = SUBJECTS[pick(rng, subjects or range(len(SUBJECTS)))]
        return FRAMES[frame].format(S=subject, a_s=first["s"], a_ing=first["ing"], then=then,
                                    front=front[0] if front else "", **joined)
    return None


def units_of(plan):
    """The plan's segments as caption units: a still pose is kind "still:<pose>", a lone gesture its kind."""
    if plan["subset"] == "static":
        seg = plan["segments"][0]
        return [((f"still:{seg['p']['pose']}", seg["p"]), None)]
    return [((seg["gesture"], seg["gp"]), None) if seg["kind"] == "stand" and seg["gesture"] else
            ((seg["kind"], seg["p"]), (seg["gesture"], seg["gp"]) if seg["gesture"] else None)
            for seg in plan["segments"]]


def describe(plan, rng):
    """2-3 whole-body captions + part-level sentences. The first caption is the plain one; a val, test or ood
    clip's second is a new phrasing (held out of train), its third (if any) a train phrasing."""
    units = units_of(plan)
    captions = [caption(units, rng, "plain")]
    if plan.get("split", "train") != "train":
        captions.append(caption(units, rng, "new") or caption(units, rng))
    while len(captions) < pick(rng, (2, 3, 3)):
        captions.append(caption(units, rng))
    parts = []
    for seg in plan["segments"]:
        if plan["subset"] == "static":
            upper, lower = (f"held still, {s}" for s in STILL_PARTS[seg["p"]["pose"]])
        else:
            upper, lower = (pick(rng, v) for v in PARTS[seg["kind"]])
            if seg["gesture"]:
                upper = pick(rng, PARTS[seg["gesture"]][0]).format_map(_Fields(seg["gp"], rng))
        fields = _Fields(seg["p"], rng)
        parts.append((_tidy(upper.format_map(fields)), _tidy(lower.format_map(fields))))
    return captions, {"upper": ", then ".join(u for u, _ in parts) + ".",
                      "lower": ", then ".join(low for _, low in parts) + "."}


def pick(rng, choices):
    """One of `choices`, uniformly, with one rng.integers draw (every random choice of synth's plans and
    text is one)."""
    return choices[int(rng.integers(len(choices)))]
