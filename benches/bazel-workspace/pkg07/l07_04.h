#ifndef PKG07_L07_04_H
#define PKG07_L07_04_H
#include <string>
#include <vector>

namespace l07_04 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l07_04

#endif
