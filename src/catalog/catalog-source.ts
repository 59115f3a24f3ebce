/**
 * What the import reads from: an upstream kind (another Cairn upstream over
 * HTTP, or an apt repository index) seen as "the changes since an anchor, in
 * pages". Each item arrives already validated into a `CatalogItem`, so a
 * malformed one is counted with its ID and never reaches the database.
 * Pages are async iterables so that no source has to hold a whole catalog.
 */
import type { CatalogItem, Category, Update } from './catalog.ts';

export interface CatalogChanges {
  /** The anchor to store once every page has been imported. */
  readonly anchor: string;
  /** True when the source sends everything (no anchor, or one it does not know). */
  readonly full: boolean;
  /** How many categories and updates the pages will hold (for "processed X of Y"). */
  readonly totals: { readonly categories: number; readonly updates: number };
  /** Items the source itself could not read at all (not even an ID). */
  readonly rejectedAtSource: number;
  categoryPages(): AsyncIterable<readonly CatalogItem<Category>[]>;
  updatePages(): AsyncIterable<readonly CatalogItem<Update>[]>;
}

export interface CatalogSource {
  /** Where it reads from, for logs and to tell one source's anchors from another's. */
  readonly url: string;
  changesSince(anchor: string): Promise<CatalogChanges>;
}
