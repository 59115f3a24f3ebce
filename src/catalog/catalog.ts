/**
 * The update catalog's typed model (docs/catalog.md): categories (company,
 * product family, product, classification) and updates with their revisions,
 * supersedence and two declarative rules. Values of these types have been
 * validated at the edge (`catalog-input.ts`); code that holds one trusts it.
 * This module owns only types and closed sets; it does no I/O.
 */
import type { Rule } from './rules.ts';

/** Category types, named as the product's update categories are. */
export const CATEGORY_TYPES = ['Company', 'ProductFamily', 'Product', 'UpdateClassification'] as const;
export type CategoryType = (typeof CATEGORY_TYPES)[number];

/** Severities of the product's security bulletins, plus `Unspecified` for updates that have none. */
export const SEVERITIES = ['Unspecified', 'Low', 'Moderate', 'Important', 'Critical'] as const;
export type Severity = (typeof SEVERITIES)[number];

export interface Category {
  /** GUID, lower case. */
  readonly id: string;
  readonly revision: number;
  readonly type: CategoryType;
  readonly name: string;
  /** Parent category's GUID (a product's family, a family's company); absent at the top. */
  readonly parent?: string;
}

export interface Update {
  /** GUID, lower case. */
  readonly id: string;
  /** Positive integer; a higher revision replaces a lower one, an equal or lower one is ignored. */
  readonly revision: number;
  readonly title: string;
  readonly description: string;
  /** Article ID (a KB number, an advisory ID); may be empty. */
  readonly articleId: string;
  /** GUID of an `UpdateClassification` category. */
  readonly classification: string;
  /** GUIDs of `Product` categories; at least one. */
  readonly products: readonly string[];
  readonly severity: Severity;
  readonly cves: readonly string[];
  /** ISO 8601 date or date-time. */
  readonly releaseDate: string;
  /** GUIDs of the updates this one supersedes. */
  readonly supersedes: readonly string[];
  readonly isApplicable: Rule;
  readonly isInstalled: Rule;
}

/** One item of a catalog as read from a source: accepted and typed, or rejected with its ID and why. */
export type CatalogItem<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly id: string; readonly code: string; readonly reason: string };
