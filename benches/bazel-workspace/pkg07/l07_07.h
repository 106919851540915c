#ifndef PKG07_L07_07_H
#define PKG07_L07_07_H
#include <string>
#include <vector>

namespace l07_07 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l07_07

#endif
