"""Synthetic French-sounding names for municipalities, streets and the river.

Names are drawn from fixed word lists with the generator's numpy ``Generator``,
so the same seed always names the same city the same way.
"""

from __future__ import annotations

import numpy as np

METROPOLE_NAME = "Valmont"
RIVER_NAME = "L'Aubrette"
RING_NAME = "Rocade de Valmont"


def _words(text: str) -> tuple[str, ...]:
    return tuple(w.strip() for w in text.replace("\n", " ").split("|") if w.strip())


_TOWN_HEADS = _words(
    """
    Beau | Bel | Bois | Chaux | Chen | Cler | Cor | Font | Fleur | Gen | Hau | Lan | Mar |
    Mont | Neu | Or | Plom | Quet | Ros | Sau | Ter | Vau | Vil | Bres | Dar | Per | Mag |
    Sen | Tal | Ahu
"""
)
_TOWN_TAILS = _words(
    """
    mont | val | ville | court | lieu | champ | ange | ois | igny | ey | ière | ain | ac |
    ot | ans | ard | oy | illy | enay | erand
"""
)
_TOWN_SUFFIXES = (
    "",
    "",
    "",
    "",
    "",
    "-lès-Valmont",
    "-sur-Aubrette",
    "-le-Haut",
    "-la-Forêt",
    "-en-Plaine",
)
_STREET_KINDS_LOCAL = ("Rue", "Rue", "Rue", "Rue", "Allée", "Impasse", "Rue", "Chemin")
_STREET_KINDS_ARTERIAL = ("Avenue", "Boulevard", "Avenue", "Cours")
_STREET_KINDS_RURAL = ("Route", "Chemin", "Route")
_DEDICATIONS = _words(
    """
    de la Liberté | Victor Hugo | Jean Jaurès | Pasteur | des Tilleuls | du Moulin |
    des Écoles | de la Gare | du Château | des Vignes | Gambetta | Carnot |
    de la République | Émile Zola | des Lilas | des Peupliers | du Stade | de l'Église |
    des Acacias | Voltaire | Jules Ferry | du Port | des Jardins | de la Fontaine |
    Marie Curie | Louis Blériot | des Cerisiers | du Lavoir | des Prés | de Bourgogne |
    Alsace-Lorraine | Sadi Carnot | Anatole France | du Général de Gaulle | Foch |
    des Marronniers | de la Paix | de Verdun | du Parc | des Roses | Berlioz | Mozart |
    Jean Moulin | des Frères Lumière | de la Croix | du Four | des Chênes |
    des Buissonnets | de la Corvée | des Champs | du Tertre | Condorcet | Lamartine |
    des Aubépines | du Mont | de l'Aubrette | des Saules | du Vieux Pont | Colbert |
    Pierre Brossolette | Charles Péguy | Saint-Martin | Saint-Nicolas | des Ursulines |
    de la Préfecture | du Palais | des Godrans | Rameau | Chabot | Buffon | Monge |
    de Mirande | des Vergers | de la Charmille | des Bleuets | des Glycines | du Clos |
    Jean Mermoz | Albert Camus | George Sand | Simone Veil | Olympe de Gouges |
    Louise Michel | Gustave Eiffel | du 8 Mai 1945 | du 11 Novembre | des Tanneries |
    de la Tuilerie | des Forges | des Courtines | de la Colombière | du Cromois |
    des Grésilles | du Drapeau | de la Toison d'Or | des Argentières | Daubenton
"""
)


def municipality_names(rng: np.random.Generator, count: int) -> list[str]:
    """``count`` distinct municipality names; the first is the central city's."""
    names = [METROPOLE_NAME]
    seen = {METROPOLE_NAME}
    while len(names) < count:
        head = _TOWN_HEADS[int(rng.integers(len(_TOWN_HEADS)))]
        tail = _TOWN_TAILS[int(rng.integers(len(_TOWN_TAILS)))]
        suffix = _TOWN_SUFFIXES[int(rng.integers(len(_TOWN_SUFFIXES)))]
        name = f"{head}{tail}{suffix}"
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def street_names(rng: np.random.Generator, road_class: np.ndarray, rural: np.ndarray) -> list[str]:
    """One name per way; ``road_class`` is 0 local, 1 arterial; ``rural`` marks rural ways."""
    n = len(road_class)
    dedication = rng.integers(len(_DEDICATIONS), size=n)
    kind_local = rng.integers(len(_STREET_KINDS_LOCAL), size=n)
    kind_art = rng.integers(len(_STREET_KINDS_ARTERIAL), size=n)
    kind_rural = rng.integers(len(_STREET_KINDS_RURAL), size=n)
    out = []
    for k in range(n):
        if road_class[k] == 1:
            kind = _STREET_KINDS_ARTERIAL[kind_art[k]]
        elif rural[k]:
            kind = _STREET_KINDS_RURAL[kind_rural[k]]
        else:
            kind = _STREET_KINDS_LOCAL[kind_local[k]]
        out.append(f"{kind} {_DEDICATIONS[dedication[k]]}")
    return out


#: Lieux-dits: the names of hamlets, fields and crossroads that stops take where the
#: streets alone do not tell one stop from another.
LOCALITIES = _words(
    """
    Les Grands Prés | La Croix Blanche | Le Bois Joli | Les Charmes | La Fontaine aux Loups |
    Le Petit Moulin | Les Terres Rouges | La Garenne | Le Champ Fleuri | Les Hautes Bornes |
    La Belle Épine | Le Clos Saint-Jean | Les Trois Chênes | La Maladière | Le Pré Joli |
    Les Noues | La Combe | Le Chaumois | Les Longènes | La Maison Blanche | Le Haut du Bourg |
    Les Creux | La Vigne Rouge | Le Gros Buisson | Les Platières | La Ferme Neuve |
    Le Poirier Sec | Les Épinettes | La Cude | Le Val Vert | Les Bruyères | La Tuilerie Haute |
    Le Carrefour des Quatre Vents | Les Rochottes | La Grange Rouge | Le Fief | Les Essarts |
    La Borde | Le Mont Blanc | Les Bas Prés | La Perrière | Le Quart | Les Baraques |
    La Corne du Bois | Le Gué | Les Marcs d'Or | La Source | Le Verger | Les Hâtes
"""
)
