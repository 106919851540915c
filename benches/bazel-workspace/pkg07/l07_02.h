#ifndef PKG07_L07_02_H
#define PKG07_L07_02_H
#include <string>
#include <vector>

namespace l07_02 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l07_02

#endif
