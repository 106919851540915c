#ifndef PKG07_L07_08_H
#define PKG07_L07_08_H
#include <string>
#include <vector>

namespace l07_08 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l07_08

#endif
